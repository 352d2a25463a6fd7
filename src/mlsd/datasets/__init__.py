"""Public data sets that ship inside installable packages, turned into mlsd tables.

Their licences may forbid redistribution: a loader finds the files in the installed package
and writes the table next to the example that uses it, never into the repository.
"""
