# The Python original of ported_queue.cpp: a child puts a heterogeneous list on a Queue
# (multiprocessing documentation, "Exchanging objects between processes: Queues").
from multiprocessing import Process, Queue


def f(q):
    q.put([42, None, 'hello'])


if __name__ == '__main__':
    q = Queue()
    p = Process(target=f, args=(q,))
    p.start()
    print(q.get())    # prints "[42, None, 'hello']"
    p.join()
