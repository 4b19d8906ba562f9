from .nextvit import NextViT

__all__ = ['NextViT']
