"""saleday's composition root: what puts the layers together for the outside world.

`saleday.http` is the HTTP front door (a FastAPI app, served by Ray Serve or in-process).
"""
