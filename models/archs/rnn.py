"""Recurrent networks: vanilla h_t = f(W_h h_{t-1} + W_x x_t + b), LSTM or GRU, with a linear head on the
last state (sequence classification) or on every state, y_t = W_y h_t + c (per-step regression)."""

from torch import Tensor, nn

from models.procedures import SUPERVISED
from models.registry import register_architecture
from models.specs import Problem, RNNSpec


class RNN(nn.Module):
    def __init__(self, spec: RNNSpec, problem: Problem) -> None:
        super().__init__()
        _steps, features = problem.input_shape
        common = dict(
            input_size=features,
            hidden_size=spec.hidden_size,
            num_layers=spec.num_layers,
            batch_first=True,
            bidirectional=spec.bidirectional,
            dropout=spec.dropout if spec.num_layers > 1 else 0.0,
        )
        if spec.cell == "rnn":
            self.recurrent: nn.RNNBase = nn.RNN(nonlinearity=spec.nonlinearity, **common)
        else:
            self.recurrent = (nn.LSTM if spec.cell == "lstm" else nn.GRU)(**common)
        self.per_step = problem.per_step_output
        self.directions = 2 if spec.bidirectional else 1
        self.head = nn.Linear(spec.hidden_size * self.directions, problem.output_size)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, F) -> (B, T, out) per step, else (B, out)
        states, final = self.recurrent(x)  # states: (B, T, H·directions)
        if self.per_step:
            return self.head(states)
        # The final state of each direction of the top layer: the backward one has read all the steps too.
        h_n = final[0] if isinstance(final, tuple) else final  # (layers·directions, B, H)
        return self.head(h_n[-self.directions :].transpose(0, 1).flatten(1))


register_architecture("rnn", build=RNN, procedure=SUPERVISED)
