# The Python original of ported_as_completed.cpp: futures mapped back to their inputs, the
# common `{executor.submit(f, x): x for x in inputs}` idiom, on processes, with a deadline.
import concurrent.futures
import time


def slow_square(x):
    time.sleep(0.01 * (5 - x))      # later inputs finish first
    if x == 3:
        raise ValueError('three is not welcome')
    return x * x


if __name__ == '__main__':
    with concurrent.futures.ProcessPoolExecutor(max_workers=5) as executor:
        future_to_input = {executor.submit(slow_square, x): x for x in range(5)}
        for future in concurrent.futures.as_completed(future_to_input, timeout=30):
            x = future_to_input[future]
            if future.exception() is not None:
                print('%d -> %s: %s' % (x, type(future.exception()).__name__, future.exception()))
            else:
                print('%d -> %d' % (x, future.result()))
