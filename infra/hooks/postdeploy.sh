#!/bin/sh
# azd postdeploy: subscribe the deployed functions to Event Grid. Idempotent: a deployment of the same
# template with the same parameters changes nothing, so `azd deploy` may run it any number of times.
set -eu
: "${AZURE_RESOURCE_GROUP:?run through azd (azd up / azd deploy)}"
echo "tuneflow: wiring Event Grid subscriptions to ${AZURE_FUNCTION_APP_NAME}"
az deployment group create --only-show-errors --output none \
  --name tuneflow-subscriptions \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --template-file infra/subscriptions.bicep \
  --parameters storageTopicName="$STORAGE_SYSTEM_TOPIC_NAME" functionAppId="$AZURE_FUNCTION_APP_ID" \
               storageAccountName="$AZURE_STORAGE_ACCOUNT_NAME" dropContainer="$TUNEFLOW_DROP_CONTAINER" \
               deadLetterContainer="$TUNEFLOW_DEAD_LETTER_CONTAINER"
az deployment group create --only-show-errors --output none \
  --name tuneflow-ml-subscriptions \
  --resource-group "$ML_RESOURCE_GROUP" \
  --template-file infra/ml-subscriptions.bicep \
  --parameters mlTopicName="$ML_SYSTEM_TOPIC_NAME" functionAppId="$AZURE_FUNCTION_APP_ID" \
               experiment="$TUNEFLOW_EXPERIMENT"
echo "tuneflow: drop datasets into container ${TUNEFLOW_DROP_CONTAINER} of ${AZURE_STORAGE_ACCOUNT_NAME}"
