"""Flywheel: outcome tracking, training and experimentation for outbound sales messages."""

__version__ = "0.1.0"

import time as _time

# when this process loaded flywheel: a source file changed after it may not be the code running
# (services.dataset builds without its line cache then)
LOADED_AT = _time.time()
