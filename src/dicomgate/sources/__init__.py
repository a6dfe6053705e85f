"""Everything that brings data in; each source calls ``intake.receive(data, origin)``."""
