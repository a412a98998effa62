"""An exponential moving average of the weights (`--ema`): evaluated and exported in place of
the raw weights, and saved in every checkpoint so that a resumed run averages exactly the same.

The average of the last few hundred steps sits in a flatter, better-generalising region than
any single step's weights; on one-epoch fine-tuning it also smooths out the last steps' noise,
so the exported model depends less on which step a validation point happened to pick.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


class WeightAverage:
    """ema = decay * ema + (1 - decay) * weights after every optimizer step, in fp32.

    Early on the decay is capped at (1 + n) / (10 + n) after n updates (the warm-up that
    TensorFlow's ExponentialMovingAverage uses), so the average is not dominated by the
    pre-trained starting point.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        self.shadow = [params[n].detach().float().clone() for n in self.names]
        self.updates = 0

    def _params(self, model: torch.nn.Module) -> list[torch.Tensor]:
        params = dict(model.named_parameters())
        return [params[n] for n in self.names]

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = [p.detach().float() for p in self._params(model)]
        torch._foreach_lerp_(self.shadow, current, 1.0 - decay)

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[None]:
        """The averaged weights in the model for the duration (evaluation, export); the
        training weights are put back afterwards, bit for bit."""
        params = self._params(model)
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, avg in zip(params, self.shadow, strict=True):
                p.copy_(avg)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, keep in zip(params, saved, strict=True):
                    p.copy_(keep)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "names": list(self.names),
                "shadow": list(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        if list(state["names"]) != self.names:
            raise ValueError("the averaged weights belong to another model")
        self.decay, self.updates = float(state["decay"]), int(state["updates"])
        self.shadow = [t.to(s.device, s.dtype) for t, s in zip(state["shadow"], self.shadow,
                                                                 strict=True)]
