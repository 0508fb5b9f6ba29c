"""Converters of pretrained networks (PyTorch state_dicts, MatConvNet simplenn .mat files, Caffe
.caffemodel + deploy.prototxt) into jaxinv network directories."""
