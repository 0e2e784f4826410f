"""The live server: the engine runner, the store recorder, one service per router,
bootstrap, keys and settings, the job book, and the demo feeder (docs/design/0011-layout.md)."""
