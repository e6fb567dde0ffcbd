"""The model zoo: small generators trained on Fashion-MNIST, shipped with the package as the benchmark."""
