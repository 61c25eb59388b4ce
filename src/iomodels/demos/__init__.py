"""The lesson's demos, made to prove their point: pools with done-callbacks, gevent coroutines."""
