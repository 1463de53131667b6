"""Training imitators: config, behavioural cloning, adversarial imitation, the run, evaluation."""
