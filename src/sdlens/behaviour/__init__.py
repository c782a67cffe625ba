"""Behaviour measurement that runs a model over existing traces: the teacher-forced PMI probe
(:mod:`sdlens.behaviour.probe`, ``sdlens probe``) and the LLM-judged behaviours (:mod:`sdlens.behaviour.judge`,
``--measures judged``). They sit above generation and models; the counting measures they feed live in
:mod:`sdlens.epistemic.measures`."""
