// Event Grid subscriptions to the deployed functions (hooks/postdeploy.* deploys this once the code is up).
// The filters are what the functions accept (tests/unit/test_infra.py holds them against shared/events.py).
param storageTopicName string
param functionAppId string
param storageAccountName string
param dropContainer string
param deadLetterContainer string

resource topic 'Microsoft.EventGrid/systemTopics@2024-06-01-preview' existing = {
  name: storageTopicName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource ingest 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2024-06-01-preview' = {
  parent: topic
  name: 'tuneflow-ingest'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: { resourceId: '${functionAppId}/functions/ingest', maxEventsPerBatch: 1 }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: ['Microsoft.Storage.BlobCreated']
      subjectBeginsWith: '/blobServices/default/containers/${dropContainer}/'
      advancedFilters: [
        { operatorType: 'StringIn', key: 'data.api', values: ['CopyBlob', 'FlushWithClose', 'PutBlob', 'PutBlockList'] }
      ]
    }
    retryPolicy: { maxDeliveryAttempts: 30, eventTimeToLiveInMinutes: 1440 }
    deadLetterWithResourceIdentity: {
      identity: { type: 'SystemAssigned' }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: { resourceId: storage.id, blobContainerName: deadLetterContainer }
      }
    }
  }
}
