"""The dreaming agent: chip profiles and limits, Lava == emulator, resume, bad input."""
import json
import multiprocessing
import threading

import numpy as np
import pytest

from conftest import assert_clean_failure
from conftest import lavaloop_cli as lavaloop
from lavaloop.deploy.dreaming import pong, protocol
from lavaloop.deploy.dreaming.agent import REFERENCE, DreamConfig, dream_config
from lavaloop.deploy.dreaming.emulator import EmulatedChip
from lavaloop.deploy.dreaming.network import Topology, draw_network
from lavaloop.deploy.dreaming.protocol import make_agent
from lavaloop.deploy.dreaming.readouts import Policy, ReadoutRules, WorldModel
from lavaloop.deploy.dreaming.reference import ReferenceAgent
from lavaloop.errors import LavaloopError, ProfileError
from lavaloop.processes.dynamics import lif_step, regular_spikes, restart_generators
from lavaloop.processes.pong_io.game import SHOW, SILENT
from lavaloop.profiles import PROFILES, MixedSignalProfile, load_profile
from lavaloop.rundir import RunDir, RunDirError

SHORT = dict(agent_steps=12, dream_steps=4, silent_games=1)
PROTOCOLS = {"ours": {}, "reference": {"protocol": "reference"}, "paired": {"paired_windows": True},
             "per_action": {"paired_windows": True, "dreams": 2, "rules": {"model_per_action": True}}}


def play(cfg: DreamConfig, chip, first_run=0, runs=None, games=None):
    agent = make_agent(cfg, chip, first_run=first_run, runs=runs)
    returns = []
    for g in range(games or cfg.games):
        returns.append(agent.play(g))
        if cfg.dream:
            agent.dream(g)
    return np.array(returns), agent.state()


def test_network_respects_the_paper_and_the_chip():
    net = draw_network(Topology(), PROFILES["dynapse1"], seed=0, mismatch_seed=0)
    conn = net.params["conn"]
    assert conn.shape == (83, 1020)
    assert np.all(conn.sum(0) == 8) and conn.max() <= 4            # 8 synapses, multiplicity 1-4
    assert not conn[40:, :510].any() and not conn[:40, 510:].any()  # agent / world model inputs
    assert np.all(conn[80:, 510:].sum(0) >= 1)                     # every model neuron hears an action
    vth = net.params["vth"]
    assert 0.15 < vth.std() < 0.25 and abs(vth.mean() - 1) < 0.05   # mismatch 1 + N(0, 0.2)
    ideal = draw_network(Topology(), PROFILES["dynapse1"], seed=0, mismatch_seed=0, mismatch_sigma=0.0)
    assert np.all(ideal.params["vth"] == 1.0) and np.array_equal(ideal.params["conn"], conn)


@pytest.mark.parametrize("topo, needle", [
    (Topology(hidden=600), "need 6 cores"),
    (Topology(synapses=80, max_multiplicity=4), "fan-in limit is 64"),
])
def test_networks_that_break_dynapse1_limits_are_rejected(topo, needle):
    with pytest.raises(ProfileError, match=needle):
        draw_network(topo, PROFILES["dynapse1"], 0, 0)


def test_dynapse2_weight_levels():
    draw_network(Topology(max_multiplicity=4), PROFILES["dynapse2"], 0, 0)
    with pytest.raises(ProfileError, match="16 weight levels"):
        draw_network(Topology(synapses=40, max_multiplicity=20), PROFILES["dynapse2"], 0, 0)


def test_dynapse2_weights_are_sums_of_mismatched_bit_currents_per_core():
    """On dynapse2 a multiplicity-m connection is the 4-bit code m: the sum of its bits'
    currents, each core's own (mismatched); the neurons' factors are those dynapse1 draws."""
    topo = Topology()
    d1 = draw_network(topo, PROFILES["dynapse1"], seed=0, mismatch_seed=3, mismatch_sigma=0.2)
    d2 = draw_network(topo, PROFILES["dynapse2"], seed=0, mismatch_seed=3, mismatch_sigma=0.2)
    m, w = d1.params["conn"], d2.params["conn"]
    assert all(np.array_equal(d1.params[k], d2.params[k]) for k in ("gain", "vth", "a_mem", "a_syn"))
    core = np.r_[np.arange(510) // 256, 2 + np.arange(510) // 256]
    bit = {}        # (core, bit) -> current, read off the multiplicities 1, 2 and 4
    for c in range(4):
        for b, mult in enumerate((1, 2, 4)):
            values = np.unique(w[:, core == c][m[:, core == c] == mult])
            assert len(values) == 1                          # one current per core and bit
            bit[c, b] = values[0]
        three = np.unique(w[:, core == c][m[:, core == c] == 3])
        np.testing.assert_allclose(three, bit[c, 0] + bit[c, 1], atol=1e-6)   # code 3 = bit 0 + bit 1
    assert len({round(v, 6) for (c, b), v in bit.items() if b == 0}) == 4     # mismatched between cores
    assert not (w[m == 0]).any()
    nominal = draw_network(topo, PROFILES["dynapse2"], seed=0, mismatch_seed=3, mismatch_sigma=0.0)
    assert np.array_equal(nominal.params["conn"], m)


def test_profiles_load_by_kind(tmp_path):
    assert isinstance(load_profile("dynapse2"), MixedSignalProfile)
    f = tmp_path / "chip.json"
    f.write_text(json.dumps(PROFILES["dynapse1"].to_dict()))
    assert load_profile(str(f)) == PROFILES["dynapse1"]
    d = PROFILES["dynapse1"].to_dict()
    del d["fan_in"]
    f.write_text(json.dumps(d))
    with pytest.raises(ProfileError, match="missing fields: fan_in"):
        load_profile(str(f))


def test_regular_generators_and_lif_neurons():
    phase, total = np.zeros(3, np.int64), np.zeros(3, np.int64)
    for _ in range(1000):   # 1000 steps at 10, 100, 0 spikes per 1000 steps
        phase, s = regular_spikes(phase, np.array([10, 100, 0]), 1000)
        total += s
    assert total.tolist() == [10, 100, 0]
    p = {"conn": np.array([[1.0, 4.0]]), "gain": np.full(2, 0.1), "a_syn": np.full(2, 0.9),
         "a_mem": np.full(2, 0.5), "b_mem": np.full(2, 0.5), "vth": np.ones(2), "refractory": 2}
    state = {"i_syn": np.zeros(2), "v": np.zeros(2), "refr": np.zeros(2, np.int64)}
    spikes = np.array([lif_step(state, np.array([1]), p) for _ in range(50)])
    assert spikes[:, 0].sum() == 0 and spikes[:, 1].sum() > 3     # only the multiplicity-4 neuron fires
    first = int(np.argmax(spikes[:, 1]))
    assert not spikes[first + 1:first + 3, 1].any()                # refractory for 2 steps


def test_batched_emulator_equals_single_runs():
    cfg = DreamConfig(runs=2, games=2, **SHORT)
    both, state = play(cfg, EmulatedChip(cfg.setups()))
    one, state1 = play(cfg, EmulatedChip(cfg.setups()[1:]), first_run=1, runs=1)
    assert np.array_equal(both[:, 1], one[:, 0])
    assert np.array_equal(state["policy.J"][1], state1["policy.J"][0])


@pytest.mark.parametrize("name", [*PROTOCOLS, "dynapse2"])
def test_emulator_is_bit_exact_with_lava(name):
    from lavaloop.deploy.dreaming.lava_chip import LavaChip

    cfg = dream_config({"runs": 2, "games": 3, **PROTOCOLS.get(name, {"profile": "dynapse2", "mismatch_sigma": 0.2}),
                        **SHORT})
    setups = cfg.setups()
    emu, emu_state = play(cfg, EmulatedChip(setups))
    chip = LavaChip(setups[1])
    try:
        lava, lava_state = play(cfg, chip, first_run=1, runs=1)
    finally:
        chip.close()
    assert not multiprocessing.active_children()
    assert np.array_equal(emu[:, 1], lava[:, 0])
    for key, value in lava_state.items():
        assert np.array_equal(emu_state[key][1:2] if value.ndim else emu_state[key], value), key
    assert np.abs(lava_state["model.W_s"]).sum() > 0          # the world model did learn


def broken_env():
    raise RuntimeError("the cabinet caught fire")


def test_game_failure_inside_lava_is_reported():
    from lavaloop.deploy.dreaming.lava_chip import LavaChip
    from lavaloop.runtime import LavaRuntimeError

    cfg = DreamConfig(runs=1, games=1, **SHORT)
    setup = cfg.setups()[0]
    setup.env_fn = broken_env
    chip = LavaChip(setup)
    try:
        with pytest.raises(LavaRuntimeError, match="cabinet caught fire"):
            play(cfg, chip)
    finally:
        chip.close()
    assert not multiprocessing.active_children()


def test_a_dying_process_model_does_not_hang(monkeypatch):
    from lavaloop.deploy.dreaming import lava_chip
    from lavaloop.processes.population_chip import models
    from lavaloop.runtime import RuntimeHung

    def crash(self):
        raise ZeroDivisionError("model bug")

    monkeypatch.setattr(models.PyPopulationChipModel, "window", crash)
    monkeypatch.setattr(lava_chip, "HANG_TIMEOUT_S", 5.0)
    cfg = DreamConfig(runs=1, games=1, **SHORT)
    chip = lava_chip.LavaChip(cfg.setups()[0])
    try:
        with pytest.raises(RuntimeHung):
            play(cfg, chip)
    finally:
        chip.close()
    assert not multiprocessing.active_children()
    stopper = threading.Thread(target=chip.chip.stop, daemon=True)   # what Process.__del__ does at exit
    stopper.start()
    stopper.join(10)
    assert not stopper.is_alive(), "stopping a killed runtime waits forever (a hang at interpreter exit)"


RESUMED = {**PROTOCOLS, "baseline": {"paired_windows": True, "rules": {"dream_baseline": 0.5}},
           "visited": {"paired_windows": True, "dream_start": "visited", "dreams": 2}}


@pytest.mark.parametrize("name", RESUMED)
def test_resume_continues_exactly(tmp_path, name):
    cfg = dream_config({"runs": 2, "games": 6, **RESUMED[name], **SHORT})
    whole = protocol.run(cfg, tmp_path / "whole", checkpoint_every=2, progress=False)
    stop = dream_config({"runs": 2, "games": 4, **RESUMED[name], **SHORT})      # interrupted after 4 games ...
    protocol.run(stop, tmp_path / "part", checkpoint_every=2, progress=False)
    cfg_file = tmp_path / "part" / "config.json"       # ... then resumed with the full length
    cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), "games": 6}))
    resumed = protocol.run(cfg, tmp_path / "part", checkpoint_every=2, progress=False)
    assert resumed["returns"] == whole["returns"]
    awake = {k: v for k, v in RESUMED[name].items() if k not in ("dreams", "dream_start")}
    with pytest.raises(RunDirError, match="differs in: dream"):
        protocol.run(dream_config({"runs": 2, "games": 6, **awake, "dream": False, **SHORT}),
                     tmp_path / "part", progress=False)
    other = "ours" if name == "reference" else "reference"
    with pytest.raises(RunDirError, match="differs in: .*protocol"):
        protocol.run(dream_config({"runs": 2, "games": 6, "protocol": other, **SHORT}), tmp_path / "part",
                     progress=False)
    assert json.loads((tmp_path / "part" / "results.json").read_text())["returns"] == whole["returns"]


def test_reference_generators_restart_each_upload():
    """The authors' patterns: int(rate / 33) spikes per 30.3 ms, the first at each upload."""
    inc = pong.restart_increments(np.array([20.0, 40.0, 100.0, 139.6]), dt_ms=1.0)   # n = 0, 1, 3, 4
    phase, spikes = restart_generators(inc, pong.PHASE_ONE), []
    for _ in range(18):
        phase, s = regular_spikes(phase, inc, pong.PHASE_ONE)
        spikes.append(s)
    times = [np.flatnonzero(col).tolist() for col in np.array(spikes).T]
    assert times == [[], [0], [0, 15], [0, 10]]      # 30.3 / (n - 1) ms apart


class CountingChip:
    """A chip whose window k gives every neuron k spikes, and the game's state k."""

    def __init__(self, runs, hidden):
        self.k, self.shape = 0, (runs, 2 * hidden)

    def expect(self, windows):
        pass

    def window(self, commands):
        self.k += 1
        info = np.zeros((self.shape[0], 6))
        info[:, :4] = self.k
        return np.full(self.shape, self.k, np.int64), info


@pytest.mark.parametrize("two, expected", [(True, [1, 3 + 2, 5 + 4]), (False, [1, 3, 5])])
def test_reference_counts_two_uploads(two, expected):
    """With model uploads, the agent reads its spikes of the model upload before its own
    (the authors' shared buffer); the one-upload ablation reads only its own."""
    cfg = dream_config({"runs": 1, "games": 1, "protocol": "reference", "agent_steps": 3,
                        "two_upload_counts": two, **{k: v for k, v in SHORT.items() if k != "agent_steps"}})
    agent = ReferenceAgent(cfg, CountingChip(1, cfg.topology.hidden))
    seen = []
    act = agent.policy.act
    agent.policy.act = lambda counts: (seen.append(int(counts[0, 0])), act(counts))[1]
    agent.play(0)
    assert seen == expected       # windows: 1 agent (reset), 2 model, 3 agent, 4 model, 5 agent, 6 model, 7 (last)


def test_paired_windows_show_games_and_dreams_alike():
    """Paired windows: after the reset window, agent windows (the model sees nothing) and
    world-model windows (the agent sees nothing, the model a state and an action) alternate,
    in real games and in dreams."""
    cfg = dream_config({"runs": 1, "games": 1, "paired_windows": True, **SHORT})
    chip = EmulatedChip(cfg.setups())
    views, window = [], chip.window
    def shown(cmds):
        out = window(cmds)
        views.append(chip.games[0].views.copy())     # what the window showed
        return out

    chip.window = shown
    agent = make_agent(cfg, chip)
    for phase in (agent.play, agent.dream):
        views.clear()
        phase(0)
        kinds = ["agent" if (v[4:8] == SILENT).all() and v[8] == -1 else
                 "model" if (v[:4] == SILENT).all() and v[8] >= 0 else "other" for v in views[1:]]
        assert kinds == ["model", "agent"] * (len(kinds) // 2) + ["model"] * (len(kinds) % 2), kinds
    chip.close()


def test_per_action_world_model_learns_what_each_action_does():
    """A transition whose state change depends only on the action (the paddle): one readout per
    action learns it, one shared readout cannot (the features do not show the action); a
    readout whose action never occurs is never changed."""
    rng = np.random.default_rng(0)
    models = {per: WorldModel(ReadoutRules(model_per_action=per), runs=1, n=20) for per in (False, True)}
    errors = {per: [] for per in models}
    for step in range(4000):
        counts = rng.poisson(2.0, (1, 20))
        actions = rng.integers(0, 2, 1)                     # action 2 never occurs
        delta = np.zeros((1, 4))
        delta[:, 2] = 6.0 * actions - 3.0                   # up or down by 3
        for per, model in models.items():
            pred, reward_pred = model.predict(counts, actions)
            if step >= 3500:
                errors[per].append(abs(pred[0, 2] - delta[0, 2]))
            model.learn(pred, reward_pred, delta, np.zeros(1), actions)
    assert np.mean(errors[True]) < 0.5 < 2.0 < np.mean(errors[False])
    assert not models[True].W_s[:, 2].any() and models[True].W_s[:, :2].any()
    before = models[True].W_s.copy()          # a step of action 0's readout leaves action 1's alone
    pred, reward_pred = models[True].predict(counts, np.array([0]))
    models[True].learn(pred, reward_pred, delta + 1.0, np.ones(1), np.array([0]))
    assert np.array_equal(models[True].W_s[:, 1], before[:, 1]) and not np.array_equal(models[True].W_s[:, 0],
                                                                                         before[:, 0])


def test_world_model_taps_read_a_velocity():
    """A state change that is the difference of this step's and the last step's position (a
    velocity): a readout of the last two windows' features learns it, one of the current
    window's cannot (half its variance is the last position); taps restart at an episode."""
    rng = np.random.default_rng(0)
    rules = {k: ReadoutRules(filter_decay=0.0, model_filter_gain=1.0, lr_state=0.02, model_taps=k) for k in (1, 2)}
    models = {k: WorldModel(r, runs=1, n=20) for k, r in rules.items()}
    errors = {k: [] for k in models}
    last = rng.integers(20)
    for step in range(6000):
        pos = rng.integers(20)
        counts = (np.arange(20) == pos)[None].astype(float)     # a place code of the position
        delta = np.zeros((1, 4))
        delta[:, 0] = 0.5 * (pos - last)
        for k, model in models.items():
            pred, reward_pred = model.predict(counts, np.zeros(1, np.int64))
            if step >= 5000:
                errors[k].append((pred[0, 0] - delta[0, 0]) ** 2)
            model.learn(pred, reward_pred, delta, np.zeros(1), np.zeros(1, np.int64))
        last = pos
    variance = 2 * np.var(0.5 * np.arange(20))                 # of the target
    assert np.mean(errors[2]) < 0.01 * variance and np.mean(errors[1]) > 0.4 * variance
    assert models[2].W_s.shape[-1] == 40
    models[2].start_episode()                   # an episode's first window has no earlier one
    models[2].predict(counts, np.zeros(1, np.int64))
    assert np.array_equal(models[2].x[:, :20], counts) and not models[2].x[:, 20:].any()


@pytest.mark.parametrize("second, keeps, updates", [(True, [False] * 3, 1 + 3), (False, [False, True, True], 1)])
def test_several_dreams_per_game(monkeypatch, second, keeps, updates):
    """`dreams` dreams after a game, each its own policy update, or (without the second Adam
    step) their gradients added up, joining the next game's update."""
    cfg = dream_config({"runs": 1, "games": 1, "dreams": 3, "second_adam_step": second, **SHORT})
    chip = CountingChip(1, cfg.topology.hidden)
    agent = make_agent(cfg, chip)
    kept, dream_once = [], agent.dream_once
    monkeypatch.setattr(agent, "dream_once", lambda g, keep_gradient: (kept.append(keep_gradient),
                                                                       dream_once(g, keep_gradient)))
    agent.play(0)
    agent.dream(0)
    assert kept == keeps
    assert chip.k == 1 + SHORT["agent_steps"] + 3 * 2 * SHORT["dream_steps"]
    assert agent.policy.adam.t == updates
    with pytest.raises(LavaloopError, match="dreams"):
        dream_config({"dreams": 0})
    with pytest.raises(LavaloopError, match="need dreaming on"):
        dream_config({"dreams": 2, "dream": False})


@pytest.mark.parametrize("name", PROTOCOLS)
def test_dreams_start_from_visited_states(name):
    """With dream_start "visited" every dream's first window shows both populations a state the
    last real game visited (no reset, no action), as a reset window would show its state."""
    cfg = dream_config({"runs": 2, "games": 1, **PROTOCOLS[name], **SHORT, "dreams": 3, "dream_start": "visited"})
    chip = EmulatedChip(cfg.setups())
    sent, window = [], chip.window
    chip.window = lambda cmds: (sent.append(np.array(cmds)), window(cmds))[1]
    agent = make_agent(cfg, chip)
    agent.play(0)
    played = len(sent)
    agent.dream(0)
    chip.close()
    starts = sent[played::2 * SHORT["dream_steps"]]
    assert len(starts) == 3
    for cmds in starts:
        assert (cmds[:, 0] == SHOW).all() and (cmds[:, 2:6] == cmds[:, 6:10]).all() and (cmds[:, 10] == -1).all()
        for r in range(2):
            assert any((cmds[r, 2:6] == s).all() for s in agent.visited[r]), (cmds[r], agent.visited[r])
    assert len({tuple(c[0, 2:6]) for c in starts} | {tuple(c[1, 2:6]) for c in starts}) > 1
    with pytest.raises(LavaloopError, match="unknown dream_start"):
        dream_config({"dream_start": "random"})
    with pytest.raises(LavaloopError, match="need dreaming on"):
        dream_config({"dream_start": "visited", "dream": False})


def test_dreams_without_rewards_keep_their_policy_updates():
    """The ablation `dream_rewards=False`: a dream adds nothing to the policy gradient, and still
    ends in its own Adam step."""
    cfg = dream_config({"runs": 2, "games": 1, **SHORT, "dream_rewards": False})
    agent = make_agent(cfg, CountingChip(2, cfg.topology.hidden))
    agent.model.predict = lambda counts, actions: (np.zeros((2, 4)), np.array([-0.3, 0.2]))
    agent.dream_once(5)
    assert not agent.policy.G.any() and agent.policy.adam.t == 1


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_dream_baseline_removes_a_steady_dreamed_reward(rate):
    """A world model that dreams the same reward every step: without a baseline each dream's
    policy gradient is that reward times the summed eligibility trace; with one that moves all the
    way to each dream's mean (rate 1) the first dream is unchanged and the second adds nothing."""
    cfg = dream_config({"runs": 2, "games": 1, **SHORT, "rules": {"dream_baseline": rate}})
    agent = make_agent(cfg, CountingChip(2, cfg.topology.hidden))
    agent.model.predict = lambda counts, actions: (np.zeros((2, 4)), np.array([-0.3, 0.2]))
    gradients = []
    for game in (1, 2):
        agent.dream_once(game)
        gradients.append(agent.policy.G.copy())
    assert np.abs(gradients[0]).max() > 0
    assert (np.abs(gradients[1]).max() == 0) == (rate == 1.0)
    if rate:
        np.testing.assert_array_equal(agent.baseline.b, [-0.3, 0.2])
    with pytest.raises(LavaloopError, match="dream_baseline must be in"):
        dream_config({"rules": {"dream_baseline": 1.5}})


@pytest.mark.parametrize("name", PROTOCOLS)
def test_the_world_model_learns_the_action_its_window_showed(name):
    """Every prediction (real or dreamed) is made with the action that the world model's last
    window showed it: the action its per-action readout is selected by."""
    cfg = dream_config({"runs": 2, "games": 1, **PROTOCOLS[name], **SHORT})
    chip = EmulatedChip(cfg.setups())
    shown, window = [], chip.window

    def recorded(cmds):
        out = window(cmds)
        shown.append([g.views[8] for g in chip.games])      # the action this window showed the model
        return out

    chip.window = recorded
    agent = make_agent(cfg, chip)
    pairs, predict = [], agent.model.predict
    agent.model.predict = lambda counts, actions: (pairs.append((shown[-1], list(actions))),
                                                   predict(counts, actions))[1]
    agent.play(0)
    agent.dream(0)
    chip.close()
    assert len(pairs) == SHORT["agent_steps"] + cfg.dreams * SHORT["dream_steps"]
    assert all(seen == acted for seen, acted in pairs), pairs


def test_protocol_settings():
    ref = dream_config({"protocol": "reference", "topology": {"hidden": 256}})
    assert (ref.window, ref.silent_games, ref.generators, ref.clip_dreams) == (18, 51, "restart", False)
    assert ref.topology.hidden == 256 and not ref.topology.action_input
    assert ref.topology.weight == Topology().weight
    assert ref.topology.model_weight_ratio == REFERENCE["topology"]["model_weight_ratio"]
    assert ref.rules.model_filter_gain == 1.0 and ref.rules.adam_eps == 1e-5
    assert ref.counts_two_uploads and not dream_config({"protocol": "reference", "dream": False}).model_windows
    assert dream_config({}) == DreamConfig()
    with pytest.raises(LavaloopError, match="unknown protocol 'authors'"):
        dream_config({"protocol": "authors"})
    with pytest.raises(LavaloopError, match="two_upload_counts needs protocol 'reference'"):
        dream_config({"two_upload_counts": True})
    with pytest.raises(LavaloopError, match="paired_windows is our protocol's"):
        dream_config({"protocol": "reference", "paired_windows": True})


def test_dream_cli_bad_input(tmp_path):
    assert_clean_failure(lavaloop("dream", "pong", "--profile", "dynapse9", "--out", tmp_path / "a"),
                         "lavaloop", "unknown chip profile 'dynapse9'")
    assert_clean_failure(lavaloop("dream", "pong", "--profile", "loihi2", "--out", tmp_path / "b"),
                         "lavaloop", "mixed-signal")
    assert_clean_failure(lavaloop("dream", "breakout", "--out", tmp_path / "c"), "lavaloop",
                         "unknown dreaming environment")
    assert_clean_failure(lavaloop("dream", "pong", "--protocol", "authors", "--out", tmp_path / "e"), "lavaloop",
                         "unknown protocol 'authors'")
    assert_clean_failure(lavaloop("dream", "pong", "--dreams", 0, "--out", tmp_path / "f"), "lavaloop", "dreams")
    assert_clean_failure(lavaloop("dream", "pong", "--entropy", -0.1, "--out", tmp_path / "g"), "lavaloop",
                         "entropy must be >= 0.0")
    bad = tmp_path / "chip.json"
    d = PROFILES["dynapse1"].to_dict()
    del d["tau_mem_ms"]
    bad.write_text(json.dumps(d))
    assert_clean_failure(lavaloop("dream", "pong", "--profile", bad, "--out", tmp_path / "d"),
                         "lavaloop", "missing fields: tau_mem_ms")
    run = tmp_path / "run"
    ok = lavaloop("dream", "pong", "--runs", 1, "--games", 1, "--out", run, "--no-progress")
    assert ok.returncode == 0, ok.stderr
    assert_clean_failure(lavaloop("dream", "pong", "--runs", 1, "--games", 1, "--no-dream", "--out", run),
                         "lavaloop", "different configuration", "dream")


def _entropy(policy, s):
    z = (policy.J * s[:, None, :]).sum(-1)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return -(p * np.log(p)).sum(1)


def test_entropy_bonus_is_the_gradient_of_the_policy_entropy():
    """With rewards 0, a step adds beta x dH/dJ to the gradient (checked against finite
    differences); Adam ascent along it raises a skewed policy's entropy, and a silent game adds nothing."""
    rng = np.random.default_rng(3)
    policy = Policy(ReadoutRules(entropy=0.5, init_std=1.0), 2, 6, [np.random.default_rng(k) for k in (0, 1)])
    counts = rng.integers(0, 4, (2, 6)).astype(float)
    policy.act(counts)
    s = policy.filter.s.copy()
    policy.reward(np.zeros(2), weight=0.0)
    assert not policy.G.any()
    policy.reward(np.zeros(2))
    numeric = np.zeros_like(policy.J)
    for idx in np.ndindex(*policy.J.shape):
        J = policy.J.copy()
        policy.J[idx] += 1e-6
        up = _entropy(policy, s)[idx[0]]
        policy.J[idx] -= 2e-6
        numeric[idx] = (up - _entropy(policy, s)[idx[0]]) / 2e-6
        policy.J = J
    np.testing.assert_allclose(policy.G, 0.5 * numeric, atol=1e-6)
    before = _entropy(policy, s)
    for _ in range(20):
        policy.start_episode()
        policy.filter.s[:] = 0.0
        policy.act(counts)
        policy.reward(np.zeros(2))
        policy.update()
    assert (_entropy(policy, policy.filter.s) > before).all()


def test_sigterm_leaves_a_resumable_run_directory(tmp_path):
    """`kill -TERM` during `lavaloop dream`: exit 128 + 15, and the run directory still holds
    a valid configuration and checkpoint that a resumed run accepts."""
    import os
    import signal
    import subprocess
    import time

    from conftest import LAVALOOP, ROOT

    out = tmp_path / "run"
    proc = subprocess.Popen([*LAVALOOP, "dream", "pong", "--runs", "1", "--games", "500", "--checkpoint-every", "1",
                             "--out", str(out), "--no-progress"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.npz").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (out / "checkpoint.npz").exists(), "no checkpoint was written"
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []
    cfg = DreamConfig.from_dict({k: v for k, v in json.loads((out / "config.json").read_text()).items()
                                 if k != "backend"})
    data = RunDir(out, {"backend": "emulator", **cfg.to_dict()}).open()
    assert 1 <= data["meta"]["games_done"] < 500


def test_exp_is_the_c_librarys_on_every_cpu():
    """The dreaming code's exp is math.exp bit for bit (numpy's AVX-512 exp differs from it in
    the last bit on some inputs, which changed whole curves: docs/dreaming.md)."""
    import math

    from lavaloop.deploy.dreaming import portable

    x = np.linspace(-60.0, 5.0, 20_001)
    assert np.array_equal(portable.exp(x), np.array([math.exp(v) for v in x]))
    assert portable.exp(np.zeros((2, 3))).shape == (2, 3)
