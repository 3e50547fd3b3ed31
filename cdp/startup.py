"""What a worker process does once its code is loaded."""
import gc


def loaded_objects_freeze() -> None:
    """Takes everything loaded so far (modules, classes, Django's registries: a worker has some 175,000 objects that
    live as long as it does) out of the cyclic garbage collector's sight. Its full collections would otherwise
    walk them all again and again while a pipeline batch allocates (a batch of 2,000 events took 107 ms with them in
    sight, 82 ms without). Garbage made later is collected as before."""
    gc.collect()
    gc.freeze()
