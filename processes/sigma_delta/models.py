"""Fixed-point ProcessModel of SigmaDeltaStack; the arithmetic is processes.dynamics."""
from __future__ import annotations

import lavaloop.processes.lava_import  # noqa: F401  (must precede Lava, see there)

# isort: split

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lavaloop.processes.dynamics import Synapse, delta_encode, rewired, sigma_delta_step, sigma_readout
from lavaloop.processes.envio.process import CONTROL_FIRST, CONTROL_IDLE
from lavaloop.processes.sigma_delta.process import SigmaDeltaStack


@implements(proc=SigmaDeltaStack, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySigmaDeltaStackModel(PyLoihiProcessModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    sigma: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    act: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    residue: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    messages: np.ndarray = LavaPyType(np.ndarray, np.int64)
    synops: np.ndarray = LavaPyType(np.ndarray, np.int64)
    w_out: np.ndarray = LavaPyType(np.ndarray, np.int64)
    b_out: np.ndarray = LavaPyType(np.ndarray, np.int64)
    f_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = proc_params
        self.layers, self.window, self.plastic = list(p["layers"]), p["window"], p["plastic"]
        self.synapses = [Synapse.from_params(l) for l in self.layers]
        ends = np.cumsum([len(l["bias"]) for l in self.layers])
        self.slices = [slice(e - len(l["bias"]), e) for e, l in zip(ends, self.layers)]
        self.last = None                                          # the payload last seen
        self.pending = [None] * len(self.layers)                  # messages into each layer, next step
        self.out = np.array(self.layers[-1]["bias"], np.int64)
        n_features = self.layers[-1]["weight"].shape[1] if self.plastic else 1
        self.features = np.zeros(n_features, np.int64)   # messages into the output layer since the restart
        self.sent_features = self.features                # as they were when `out` was computed

    def restart(self) -> None:
        if self.plastic:
            self.take_readout()
            self.features = np.zeros_like(self.features)
            self.sent_features = self.features
        self.sigma[:], self.act[:], self.residue[:] = 0, 0, 0
        self.last[:] = 0
        self.pending = [None] * len(self.layers)
        self.out = np.array(self.layers[-1]["bias"], np.int64)

    def take_readout(self) -> None:
        """Use the readout weights the host left in `w_out`, `b_out` (if they changed)."""
        new = rewired(self.layers[-1], self.w_out, self.b_out)
        if new is not None:
            self.layers[-1], self.synapses[-1] = new

    def run_spk(self):
        self.s_out.send(self.out)                 # last step's readout: one-step synaptic delay
        if self.plastic:
            self.f_out.send(self.sent_features)
        x = self.s_in.recv().astype(np.int64)
        payload, control = x[:-1], int(x[-1])
        if self.last is None:
            self.last = np.zeros_like(payload)
        if control == CONTROL_FIRST and (self.time_step - 1) % self.window == 0:
            self.restart()
        inputs = self.pending
        if control != CONTROL_IDLE:
            inputs = [delta_encode(payload, self.last), *inputs[1:]]
            self.last = payload
        self.pending = [None] * len(self.layers)
        last = len(self.layers) - 1
        for j, (layer, syn, sl, msg) in enumerate(zip(self.layers, self.synapses, self.slices, inputs)):
            if msg is None or not msg.any():      # no input: the step would change nothing
                continue
            self.messages[j] += np.count_nonzero(msg)
            self.synops[j] += syn.synops(msg)
            a_in = syn.current(msg)
            if j == last:                         # slices are views: the dynamics update the Vars in place
                self.out = sigma_readout(self.sigma[sl], a_in, layer["bias"])
                if self.plastic:
                    self.features = self.features + msg
                    self.sent_features = self.features
            else:
                self.pending[j + 1] = sigma_delta_step(self.sigma[sl], self.act[sl], self.residue[sl], a_in,
                                                       layer["bias"], layer["vth"], layer["msg_shift"])
