"""Waiting for the OS without guessing how long: read until the wanted value shows, within a bound.

A lab never sleeps a fixed time to "let a state settle"; it polls what it waits for, backing off from 50 us, and
reports what it last saw if the bound passes first.
"""
import time


def poll(read, done, deadline):
    """read() until done(value) or `deadline` seconds pass; returns the last value either way."""
    end, pause = time.monotonic() + deadline, 0.00005
    value = read()
    while not done(value) and time.monotonic() < end:
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
        value = read()
    return value
