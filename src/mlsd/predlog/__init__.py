"""The prediction log: what the server answered and what was true.

:mod:`mlsd.predlog.writer` runs in the server (standard library and orjson only);
:mod:`mlsd.predlog.reader` reads finished segments with DuckDB for monitoring and retraining.
"""
