"""One construct per concern: source buckets, queues, table, secret, function, monitoring."""
