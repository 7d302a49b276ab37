"""Plumbing every layer may use: files written atomically (`fileio`), one writer per folder
(`locking`), argument checks (`checks`) and TensorFlow loaded without its start-up noise (`quiet`).

Imports nothing else from va2att.
"""
