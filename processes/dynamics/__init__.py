"""The integer arithmetic of every neuron and synapse: one source of truth.

Lava ProcessModels call these functions in their step (`run_spk`, or `run_async` for the
asynchronous dreaming chip); the fast emulators call the very
same functions on batches, so they are bit-exact with Lava by construction. States and
currents are int64; spike inputs are summed in the narrowest exact integer type, graded
inputs in an exact float product; a leading batch dimension is allowed everywhere. The hot
loops are compiled with numba. Imports numpy and numba only, never Lava.

One module per neuron family (a new coding adds one):

* `fixed`: saturation, shifts, input encoding, exact dense and convolutional products;
* `rate`: integrate-and-fire neurons, event-driven synapses, readouts (converted DQNs);
* `grsn`: graded-spike layers and gated recurrent spiking neurons (GRSN policies);
* `sigma_delta`: sigma-delta ReLU neurons with graded spikes (DQNs deployed as Loihi 2 runs ANNs);
* `mixed_signal`: spike generators and LIF neurons of DYNAP-SE chips (the dreaming agent, mapped DQNs).

Their public functions are also importable from this package.
"""
from lavaloop.processes.dynamics.fixed import conv2d, dense, encode_input, exact_float, exact_int, saturate, shift
from lavaloop.processes.dynamics.grsn import (
                                               continuous_action,
                                               graded_dense,
                                               grsn_gates,
                                               grsn_step,
                                               prepare_stage,
                                               run_stage,
                                               sigmoid_lookup,
                                               stage_ops,
)
from lavaloop.processes.dynamics.mixed_signal import (
                                               SparseConn,
                                               fanout,
                                               generator_increments,
                                               lif_step,
                                               mapped_layer_step,
                                               on_grid,
                                               place_cell_increments,
                                               population_window,
                                               regular_spikes,
                                               restart_generators,
                                               sparse_conn,
                                               synaptic_drive,
)
from lavaloop.processes.dynamics.rate import (
                                               Synapse,
                                               conv_fanout,
                                               conv_reach,
                                               if_step,
                                               if_steps,
                                               readout,
                                               rewired,
                                               synapse_count,
)
from lavaloop.processes.dynamics.sigma_delta import delta_encode, sigma_delta_step, sigma_readout

__all__ = ["SparseConn", "Synapse", "continuous_action", "conv2d", "conv_fanout", "conv_reach", "delta_encode", "dense",
           "encode_input", "fanout", "generator_increments",
           "exact_float", "exact_int", "graded_dense", "grsn_gates", "grsn_step", "if_step", "if_steps",
           "lif_step", "mapped_layer_step", "on_grid",
           "place_cell_increments", "population_window", "prepare_stage", "readout", "rewired", "regular_spikes",
           "restart_generators", "run_stage",
           "saturate", "shift", "sigma_delta_step", "sigma_readout", "sigmoid_lookup", "sparse_conn", "stage_ops",
           "synapse_count", "synaptic_drive"]
