"""store.sweeps: the local pool's workers."""


def test_pool_workers_take_the_gpus_in_turn(monkeypatch):
    """#22 item 3: with several GPUs, JOBS=auto's workers spread over them (worker i: GPU i mod n)."""
    import multiprocessing

    import torch

    from breakeven_utils.store import sweeps as S
    got, threads = [], []
    monkeypatch.setattr(torch.cuda, "set_device", got.append)
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    counter = multiprocessing.get_context("spawn").Value("i", 0)
    for _ in range(5):
        S.init_worker(3, counter, 2)
    assert got == [0, 1, 0, 1, 0] and threads == [3] * 5
    S.init_worker(None, counter, 1)  # one GPU (or none): no device set
    assert got == [0, 1, 0, 1, 0]
