"""The photo path in small parts, in data-flow order (docs/architecture.md):

``people`` (detect, boxes, crops, masks) -> ``camera`` (the photo's intrinsics, seen in each crop) ->
``start`` (the initial body: IK to mediapipe's 3D, the lifter, the network or a user's file) ->
``neuralfit.fitting.inputs.fit_batch`` -> ``neuralfit.fitting.Fitter`` -> ``results`` (typed per person)
-> ``outputs`` (params.npz, meshes, pictures, fit.json). ``neuralfit.pipeline`` runs them in order.
"""
