"""Deployment of the mixed-signal kind (a DQN mapped onto a DYNAP-SE profile).

Lava: EnvIO -> MixedSignalStack -> EnvIO, one window of T + layers + 1 steps per env step, on
one chip instance (`--mismatch-seed`, `--mismatch-sigma`; none: the nominal chip). `--timesteps`
deploys with another window than the one trained for; the host readout is then refitted to the
chip's counts over it (`--calibrate-readout`, required).
Emulator: deploy.mixed_signal, bit-exact per instance. Fidelity: as the other DQN kinds',
against the float source on the visited observations.
"""
from __future__ import annotations

import numpy as np

from lavaloop.conversion.artifact_ms import MixedSignalArtifact
from lavaloop.deploy.episodes import EpisodeLog, idle_corrected_counters, recorded_actions, run_envio_episodes
from lavaloop.deploy.kinds.dqn import DQNDeployment
from lavaloop.deploy.mixed_signal import build_graph, calibrate_instance, run_emulator
from lavaloop.envs import episode_limit
from lavaloop.errors import LavaloopError
from lavaloop.options import RunSettings
from lavaloop.runtime import LavaRuntime


class MixedSignalDeployment(DQNDeployment):
    accepts = ("timesteps", "env", "sticky_actions", "env_params", "mismatch_seed", "mismatch_sigma",
               "calibrate_readout", "readout_fit")

    def __init__(self, art: MixedSignalArtifact, settings: RunSettings):
        super().__init__(art, settings)
        self.trained_timesteps = art.timesteps
        if settings.timesteps is not None and settings.timesteps != art.timesteps:
            if not settings.calibrate_readout:
                raise LavaloopError(f"the artifact's host readout reads counts over T={art.timesteps} steps: "
                                    f"--timesteps {settings.timesteps} needs --calibrate-readout")
            self.art = self.art.with_timesteps(settings.timesteps)
        self.sigma = self.art.profile.mismatch_sigma if settings.mismatch_sigma is None else settings.mismatch_sigma
        self.chip = self.art.instance(settings.mismatch_seed, self.sigma)
        if settings.calibrate_readout:
            self.art = calibrate_instance(self.art, self.chip, settings.readout_fit or "fixed")

    def run_lava(self, progress: bool) -> EpisodeLog:
        envio, stack = build_graph(self.art, self.chip, self.seeds, self.epsilon, episode_limit(self.art.env_spec))
        window = self.art.window
        with LavaRuntime(envio) as rt:
            steps, wall = run_envio_episodes(rt, envio, len(self.seeds), window * 25, progress)
            lengths = envio.lengths.get().astype(np.int64)
            spikes, synops = idle_corrected_counters(rt, [stack], window, steps // window - int(lengths.sum()))
            actions, greedy = recorded_actions(envio, lengths)
            return EpisodeLog(seeds=self.seeds, returns=envio.returns.get().astype(float), lengths=lengths,
                              actions=actions, greedy=greedy, spikes=spikes, synops=synops, steps=steps,
                              wall_s=wall, extra={"compile_s": rt.compile_s})

    def run_emulator(self, progress: bool) -> EpisodeLog:
        return run_emulator(self.art, self.chip, self.seeds, self.epsilon, progress)

    def ops(self, log: EpisodeLog) -> dict[str, int]:
        """Synaptic events (each spike times its fan-out; the generators' included) as AC; no
        neuron updates are charged: the analog neurons integrate continuously. The energy
        models are digital ones (lavaloop.deploy.energy): no DYNAP-SE figures are sourced."""
        return {"mac": 0, "ac": int(sum(log.synops)), "neuron": 0}

    def config(self) -> dict:
        m = self.art.manifest["mapping"]
        return {"coding": "mixed-signal", "timesteps": self.art.timesteps, "trained_timesteps": self.trained_timesteps,
                "mismatch_seed": self.settings.mismatch_seed,
                "mismatch_sigma": None if self.settings.mismatch_seed is None else self.sigma,
                "readout_calibrated_to_instance": self.settings.calibrate_readout,
                "instance_readout": self.art.mapped.report.get("instance_readout"),
                "neurons": m["neurons"], "cores": m["cores"], "chips": m["chips"], "synapses": m["synapses"]}

    @staticmethod
    def summary_lines(result) -> list[str]:
        d = result.details
        chip = ("the nominal chip (no mismatch)" if d["mismatch_seed"] is None
                else f"chip instance {d['mismatch_seed']} (mismatch sigma {d['mismatch_sigma']})")
        calibrated, c = "", d["instance_readout"]
        if c:
            fit = (f"ridge {c['ridge']:.3g}, {c['folds']}-fold agreement {c['cv_agreement']:.3f}" if c["fit"] == "cv"
                   else "fixed ridge")
            calibrated = f"; readout calibrated to this chip ({fit}, {c['windows']} windows)"
        window = f"T={d['timesteps']}" + (f" (trained at T={d['trained_timesteps']})"
                                          if d["trained_timesteps"] != d["timesteps"] else "")
        return [f"coding: mixed-signal, {window}, on {chip}{calibrated}; {d['neurons']} neurons on "
                f"{d['cores']} cores; spikes (generators, layers) {d['spikes_per_layer']}",
                "energy: the digital models applied to this chip's synaptic events, not a DYNAP-SE estimate"]
