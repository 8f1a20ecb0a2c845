"""Training: :func:`fit` (the loop), the objective and one step, evaluation, the history and callbacks,
checkpoints, progress lines, the memory setting, what a step holds (:func:`measure_memory`), :func:`doctor`
(the pre-flight checks) and :func:`lr_find`.

Each private module holds one concern; this package re-exports the public names.
"""

from funcnn.training._checkpoint import Checkpoint as Checkpoint
from funcnn.training._checkpoint import saved_config as saved_config
from funcnn.training._checkpoint_files import load_checkpoint as load_checkpoint
from funcnn.training._checkpoint_files import save_checkpoint as save_checkpoint
from funcnn.training._doctor import DoctorReport as DoctorReport
from funcnn.training._doctor import doctor as doctor
from funcnn.training._fit import TrainingInterrupted as TrainingInterrupted
from funcnn.training._fit import batch_starts as batch_starts
from funcnn.training._fit import fit as fit
from funcnn.training._fit import is_ctrl_c as is_ctrl_c
from funcnn.training._history import Callback as Callback
from funcnn.training._history import EpochEnd as EpochEnd
from funcnn.training._history import FitResult as FitResult
from funcnn.training._history import History as History
from funcnn.training._history import early_stopping as early_stopping
from funcnn.training._lr_find import LRFind as LRFind
from funcnn.training._lr_find import lr_find as lr_find
from funcnn.training._memory import keep_freed_memory as keep_freed_memory
from funcnn.training._memory_report import MemoryReport as MemoryReport
from funcnn.training._memory_report import MemoryRow as MemoryRow
from funcnn.training._memory_report import measure_memory as measure_memory
from funcnn.training._objective import accuracy as accuracy
from funcnn.training._objective import l2_penalty as l2_penalty
from funcnn.training._objective import predict as predict
from funcnn.training._objective import training_step as training_step
from funcnn.training._objective import value_and_grad as value_and_grad
from funcnn.training._objective import with_l2 as with_l2
