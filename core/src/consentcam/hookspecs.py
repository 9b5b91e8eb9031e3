import pluggy
hookimpl = pluggy.HookimplMarker("consentcam")
