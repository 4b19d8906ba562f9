from .backbones import NextViT

__all__ = ['NextViT']
