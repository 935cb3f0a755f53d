"""Sources and destinations: adapters that own sockets, brokers and drivers."""
