"""``iomodels load``: a verified TCP request/response load generator.

Workload in (:mod:`.workload`), one or more worker processes each running an
engine (:mod:`.aio_engine` or :mod:`.thread_engine`), tallies merged with
HdrHistogram (:mod:`.tally`), one result out (:mod:`.runner`).
"""

from .runner import LOST_KINDS, LoadError, Progress, run_load
from .tally import Tally
from .workload import Workload, parse_size, parse_target

__all__ = ["LOST_KINDS", "LoadError", "Progress", "Tally", "Workload", "parse_size", "parse_target",
           "run_load"]
