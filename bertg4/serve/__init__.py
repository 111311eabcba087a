"""Serving: ``bertg4 serve`` (a Ray Serve application speaking the Open Inference Protocol)
and ``bertg4 loadtest`` (an open-loop load generator checked against the batching simulator).

- :mod:`bertg4.serve.protocol`: request checks, outputs and errors of the protocol (pure);
- :mod:`bertg4.serve.app`: the Ray Serve deployment and its application builder;
- :mod:`bertg4.serve.server`: start and stop a server (local Ray or a cluster);
- :mod:`bertg4.serve.loadtest`: Poisson arrivals over HTTP, one record per rate;
- :mod:`bertg4.serve.simulate`: the simulator fed with what the server measured;
- :mod:`bertg4.serve.command`: the ``serve`` and ``loadtest`` subcommands.

Ray, FastAPI and aiohttp (the ``serve`` extra) are imported only when used.
"""
