"""The multi-task network: backbone + U-Net decoder + feature / part / keypoint heads + SMPL regressor.

Public API::

    net = MultiTaskNet(NetConfig())                   # EfficientNet-lite0 with bundled ImageNet weights
    out = net(net.normalise(images))                  # dict of dense maps and regressor outputs
    obs = predict(net, crops)                          # the observation dict the fitter consumes
    smpl = regress(net, keypoints)                     # keypoint regressor only: SMPL from 2D keypoints
    save_network(path, net, body, provenance)          # atomic checkpoint with body / joint-set identity
    net = load_network(path, body, device="cpu")       # NeuralfitError if made for another body/joint set

See docs/network.md.
"""

from neuralfit.nets.checkpoint import body_signature, load_network, read_checkpoint, save_network
from neuralfit.nets.heads import decode_heatmaps, gaussian_heatmaps
from neuralfit.nets.model import STRIDE, MultiTaskNet, NetConfig, keypoint_vector, predict, regress

__all__ = [
    "STRIDE", "MultiTaskNet", "NetConfig", "predict", "regress", "keypoint_vector", "save_network", "load_network", "read_checkpoint",
    "body_signature", "decode_heatmaps", "gaussian_heatmaps",
]
