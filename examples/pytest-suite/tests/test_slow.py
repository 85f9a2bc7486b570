import time


def test_slow_io():
    time.sleep(1.5)
    assert True


def test_slow_again():
    time.sleep(0.5)
