"""The training library: SFT, reward model and PPO as InstructGPT specifies, plus a simulated world.

Config dataclasses and plain records in (export batch directories), immutable model directories out,
progress through callbacks. Never imports `app`. Entry points:
    training.models.load_policy / load_reward_model
    training.sft.run_sft, training.reward.run_reward, training.ppo.run_ppo, training.dpo.run_dpo
    training.generate.sample_completions / Sampler, training.evaluate.evaluate_policy
    training.world (pure Python: prompts, corpus, oracle, simulated labelers), outside the core:
    the core never imports it; callers hand world behaviour in as hooks (training.world.hooks), and
    training.world.base.ensure_base_model builds the demo's base model from the world's corpus
"""
