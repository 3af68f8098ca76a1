"""klm's training lifecycle, shared by every training mode.

- `TrainingSession` (`session.py`): setup, the run folder, the segmented
  `model.fit` loop with exact resume, evaluation every N steps, early
  stopping, the summary.
- `RunFolder` (`run_folder.py`): lock, identity, backups (two checksummed
  generations), `last.keras`/`best.keras`, clean errors on failed writes.
- `TrainingState` (`state.py`): what a backup records besides the weights.
"""

from klm.training.run_folder import RunFolder
from klm.training.session import LoopPlan, TrainingSession
from klm.training.state import TrainingState

__all__ = ["LoopPlan", "RunFolder", "TrainingSession", "TrainingState"]
