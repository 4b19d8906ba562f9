from .fileio import AtomicLocalBackend
from .hooks import StopOnInvalidLossHook

__all__ = ['AtomicLocalBackend', 'StopOnInvalidLossHook']
