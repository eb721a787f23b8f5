# The Python original of ported_process_info.cpp: a Process running f('bob'), each side
# printing who it is (multiprocessing documentation, "The Process class").
from multiprocessing import Process, current_process, parent_process
import os


def info(title):
    print(title)
    print('process name:', current_process().name)
    parent = parent_process()
    print('parent process:', parent.pid if parent else os.getppid())
    print('process id:', os.getpid())


def f(name):
    info('function f')
    print('hello', name)


if __name__ == '__main__':
    info('main line')
    p = Process(target=f, args=('bob',))
    p.start()
    p.join()
    print('exit code:', p.exitcode)
