"""Trainers that make the checkpoints lavaloop converts (they are not conversion).

CleanRL-style single-file scripts, each with a documented Config, seeded and resumable:
`dqn` (MLP DQN, classic control), `dqn_atari` (Nature DQN on ALE games), `recurrent`
(GRSN / LIF / GRU recurrent DQN for POMDPs, with quantization-aware fine-tuning), `sac`
(recurrent SAC for continuous POMDPs). The torch model definitions they train live in
lavaloop.conversion.models, because conversion reads them and must not depend on trainers.
Run one as `python -m lavaloop.trainers.dqn --help`.
"""
