from .checkpoint_hook import SafeCheckpointHook
from .fileio import AtomicLocalBackend
from .hooks import StopOnInvalidLossHook
from .seg_hooks import SegDataCheckHook

__all__ = [
    'AtomicLocalBackend', 'StopOnInvalidLossHook', 'SegDataCheckHook',
    'SafeCheckpointHook'
]
