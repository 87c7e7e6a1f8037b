"""One package per notebook, each of the same shape (``settings``, ``runs``,
``analysis``, ``claims``, ``figures``; ``plugins`` where it adds update rules or
metrics to the recorder), listed once in ``registry``; helpers two sections share are
in ``common``. A section imports every layer below and never another section."""
