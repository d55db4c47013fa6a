"""The seeds' lab with logitlab's imports: the whole script is what is timed.

    python benchmarks/lab.py
"""
import numpy as np
from sklearn.datasets import make_blobs

from logitlab import Sequential, softmax
from logitlab.layers import Dense
from logitlab.losses import SparseCategoricalCrossentropy
from logitlab.optimizers import Adam

centers = [[-5, 2], [-2, -2], [1, 2], [5, -2]]
X_train, y_train = make_blobs(n_samples=2000, centers=centers, cluster_std=1.0, random_state=30)
preferred_model = Sequential(
    [
        Dense(25, activation='relu'),
        Dense(15, activation='relu'),
        Dense(4, activation='linear')
    ]
)
preferred_model.compile(
    loss=SparseCategoricalCrossentropy(from_logits=True),
    optimizer=Adam(0.001),
)
preferred_model.fit(X_train, y_train, epochs=10)
p_preferred = preferred_model.predict(X_train)
print(f"two example output vectors:\n {p_preferred[:2]}")
print("largest value", np.max(p_preferred), "smallest value", np.min(p_preferred))
sm_preferred = softmax(p_preferred)
print(f"two example output vectors:\n {sm_preferred[:2]}")
print("largest value", np.max(sm_preferred), "smallest value", np.min(sm_preferred))
for i in range(5):
    print(f"{p_preferred[i]}, category: {np.argmax(p_preferred[i])}")
