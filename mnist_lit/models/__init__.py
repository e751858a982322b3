"""The networks, one per module, each with the dataclass that declares its settings (conf/model/ names it by
``_target_``); ``base`` builds any of them from a config and measures it."""
