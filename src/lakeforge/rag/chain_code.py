"""The file MLflow logs as a RAG chain's code (models from code): it sets the model.

MLflow copies this file into each logged chain and runs it at load time; the chain's
configuration arrives as ``model_config`` (see :class:`lakeforge.rag._model.RagChainModel`).
"""

import mlflow

from lakeforge.rag._model import RagChainModel

mlflow.models.set_model(RagChainModel())
