"""Converters of pretrained networks (PyTorch state_dicts, MatConvNet simplenn .mat files, Caffe
.caffemodel + deploy.prototxt) into jaxinv networks (`convert.convert`; the command line is `jaxinv-convert`)."""
