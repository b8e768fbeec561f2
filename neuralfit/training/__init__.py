"""Training loops: the multi-task network (contrastive feature bank) and the feature GMM MLE.

- :mod:`neuralfit.training.network`: ``TrainConfig``, ``NetworkTrainer``, ``train_network`` (``neuralfit train network``).
- :mod:`neuralfit.training.contrastive`: ``FeatureBank`` (EMA, unit norm), ``contrastive_loss``, mesh adjacency.
- :mod:`neuralfit.training.gmm`: ``accumulate_statistics``, ``build_neural_model`` (``neuralfit train gmm``).
- :mod:`neuralfit.training.batch`: the batch contract and the ground truth derived from it.
- :mod:`neuralfit.training.losses`, :mod:`neuralfit.training.metrics`: loss terms; PA-MPJPE, mIoU, PCK, feature accuracy.

Nothing is imported here: ``import neuralfit.training`` stays cheap.
"""
