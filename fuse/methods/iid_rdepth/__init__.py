"""IID-RDepth (IEEE TMM, arXiv 2604.07664): monocular depth as feature restoration, re-implemented
without public code as a plug-in for the DA-V2 and FUSE models (facts: ``shared/spec/iid-rdepth.md``;
every assumption: ``docs/iid_rdepth.md``).

Importing this package registers the model kind ``iid_rdepth`` (a wrapper around a built
``depth_anything_v2`` or ``fuse`` model) and the training stage ``restore`` with its config section.
"""
from fuse.methods.iid_rdepth import stages  # importing it registers the stage and the section
from fuse.methods.iid_rdepth.av_lfe import AVLFE, EventFeatures
from fuse.methods.iid_rdepth.diffusion import FeatureRestorer, RestorerSettings
from fuse.methods.iid_rdepth.invertible import CouplingSettings, InvertibleStack, LipschitzProbe, lipschitz_bounds
from fuse.methods.iid_rdepth.model import IIDRDepth, IIDRDepthConfig, build_iid_rdepth

__all__ = ["AVLFE", "EventFeatures", "FeatureRestorer", "RestorerSettings", "CouplingSettings", "InvertibleStack",
           "LipschitzProbe", "lipschitz_bounds", "IIDRDepth", "IIDRDepthConfig", "build_iid_rdepth", "stages"]
