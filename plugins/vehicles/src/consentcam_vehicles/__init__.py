"""ConsentCam plugin: sort evidence by vehicle (bicycle, car, motorcycle, bus, truck, train) with an offline
YOLOX detector on the CPU. It declares no biometric capability and never labels people."""

__version__ = "0.1.0"
