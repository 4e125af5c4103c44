"""Code every app may import: it imports nothing of this project's.

Only the application errors live here. `chatapi` wires the apps together
and imports them; the apps never import `chatapi`. Both sides need the
errors (apps raise them, chatapi's exception handler renders them), so they
sit below both, as in the HackSoft example project's `core/exceptions.py`.
"""
