"""Point-in-time account features, labels and training sets, computed as SQL
inside the warehouse engine. A library: no orchestration imports here."""
