# Put first on klippy's path by a test: Klipper's Python without wsproto
raise ImportError("wsproto hidden by the test (tests/data/no_wsproto)")
