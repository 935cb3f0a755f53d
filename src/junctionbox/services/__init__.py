"""Use cases, one module per resource family. They talk to the store through query modules
inside one transaction per use case, and raise only junctionbox errors."""
