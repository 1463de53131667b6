"""The audit: settings, input checks, detectors, calibration, severity, explanations, and the pipeline that runs them
in order."""
