"""The config: resolvers registered before Hydra composes, and the checks of a composed config."""
